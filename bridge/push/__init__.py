"""Push (design section 10): hooks from Sentry and Tracker are hints that wake the daemon's next
cycle early; polling stays the safety net.  Nothing in a hook body is trusted as a value."""
