"""Review of 00ec382..d6cbf0c (followers baseline, second round): remaining ways the followers
rule loses a bookmark, reverts a person's unfollow, or never removes a follower it added.

The rules (bridge/core/plan.py `_plan_followers`): a follower is added only when a bookmark
*appears* compared with the link's followers baseline; only followers the bridge added (owned)
are removed, when their bookmark goes; a follower a person removes or adds by hand is left alone.

Every test here fails at d6cbf0c.  The first passes at 5be0118 (a regression of the first-look
Adopt); the others fail there too (older gaps).  Two more found in the same round are left open
(a relink while a person is unmapped; a person mapped to another login later).
"""

from __future__ import annotations

from pathlib import Path

from bridge.core.actions import AddFollowers, RemoveFollowers
from bridge.core.new_issue import unique_key
from tests.test_engine import World, make_world
from tests.test_follower_baseline import BOB, followers, restart_with, start, writes_of_cycles
from tests.test_plan import USERS, base, plan_link, policy, snap

# == 1. The first look takes the bookmarks of people mapped to nobody for "none" =================


def test_first_look_while_unmapped_then_unfollow_is_not_reverted_when_mapped_again(tmp_path: Path) -> None:
    """bob bookmarks a Sentry issue; the bridge creates its ticket asking for bob as a follower,
    and the process stops before the link is written (the intent row stays pending).  Before the
    cycle that finds it again, a second Tracker account with bob's e-mail appears, so bob is
    mapped to nobody and his bookmarks are not searched.  The recovery cycle owns bob (the
    create asked for him) and takes the first look at the bookmarks: the owned followers stand
    for the bookmarks seen, but `before` (plan.py, the no-baseline branch) keeps only owned
    logins with a person now, and `bookmarks_seen` carries nothing without a baseline, so the
    baseline becomes {} although bob's bookmark is there.  bob unfollows by hand (the bridge
    forgets him, rightly).  Once the operator maps bob explicitly, his old bookmark looks new and
    the bridge follows the ticket for him again, reverting his unfollow (the case
    test_review_followers #3 fixed for links that already had a baseline)."""
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    sid = w.sentry.add_issue("backend", "boom")
    w.sentry.bookmark(sid, BOB)
    unique = unique_key("acme", sid)
    w.store.add_intent(sid, unique, "OPS", followers=frozenset({"bob"}))
    key = w.tracker.add_issue("OPS", "boom", followers=["bob", "alice"], unique=unique)
    w.tracker.add_user("bob2", BOB)  # a second account with bob's e-mail: bob matches nobody
    report = w.cycle(full=True)
    assert report.recovered == 1
    w.tracker.remove_follower(key, "bob", by="bob")
    assert w.cycle(full=True).ok
    restart_with(w, {BOB: "bob"})
    assert writes_of_cycles(w, True, False, True) == []
    assert "bob" not in followers(w, key)




# == 3. An unfollow seen in a cycle whose earlier write fails is thrown away (no baseline yet) ===




def test_an_unfollow_seen_while_a_status_write_fails_is_not_thrown_away(tmp_path: Path) -> None:
    """A recovered link without a bookmark baseline (bob owned, the create asked for him).  bob
    unfollows by hand, and the issue is resolved in Sentry.  The next cycle knows the bookmarks:
    the plan is [close the ticket, Adopt the first look], but the transition is answered 503, the
    executor stops at the first write that does not end DONE, so the Adopt never runs; the link
    still has no bookmark baseline, and `Engine.finish` skips the pruning of owned followers
    (cycle.py, `looked`): the unfollow it saw is lost.  bob follows again by hand (his own
    follow now), the status crosses next cycle, and the first look makes bob owned again.  When
    bob drops the bookmark, the bridge unfollows him: a person's own follow removed."""
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    sid, key = start(w, "recovered, bookmarks unknown")
    assert "followers" not in w.store.baselines_for([sid]).get(sid, {})  # no bookmark baseline yet
    w.tracker.remove_follower(key, "bob", by="bob")
    w.sentry.set_status(sid, "resolved")
    w.tracker.inject("status", status=503, method="POST", path=r"/_execute$", times=100)
    assert not w.cycle().ok
    w.tracker.clear_faults()
    assert w.store.owned_followers_of(sid) == frozenset()  # the unfollow it saw ended the ownership
    w.tracker.add_follower(key, "bob", by="bob")  # bob's own follow now
    assert w.cycle().ok
    assert w.t_status(key) == "closed"
    w.sentry.bookmark(sid, BOB, on=False)
    assert writes_of_cycles(w, False, True) == []
    assert "bob" in followers(w, key)


# == 4. A person's Sentry e-mail changes: the same person's bookmark looks gone and new at once ===


def change_primary_email(w: World, old: str, new: str) -> None:
    """The person changes the primary e-mail of their Sentry account (the old one stays on the
    account as a secondary address, and as the member's e-mail)."""
    user = w.sentry._user_by_email(old)
    assert user is not None
    user.emails.append((f"{user.id}-2", new, True))
    user.email = new


def test_a_primary_email_change_does_not_drop_the_follower_of_a_bookmark_still_there(tmp_path: Path) -> None:
    """bob bookmarks; the bridge follows the ticket for him (owned).  bob changes his Sentry
    primary e-mail (the old address stays on his account, so he is still mapped to `bob`).  The
    bookmark searches run per primary e-mail, so the bookmark is now seen under the new address;
    the baseline holds the old one.  The planner compares e-mails, not people: the old address is
    "removed" (bob owned and following: RemoveFollowers) and the new one "added" (bob already
    follows: nothing), so the bridge unfollows bob while his bookmark is still there, and the
    baseline then moves on, so nothing ever follows him again."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle(full=True).ok
    assert followers(w, key) == {"bob"}
    change_primary_email(w, BOB, "robert@example.com")
    for full in (True, False, True):
        assert w.cycle(full=full).ok
    assert followers(w, key) == {"bob"}


def test_planner_one_person_seen_under_another_of_their_emails_is_neither_a_removal_nor_an_addition() -> None:
    """The same at the planner (tests/test_plan.py's USERS: bob's account has bob@example.com
    and bob@old.example, both mapped to `bob`).  The baseline holds the bookmark under one
    address, the search now under the other: the person's bookmark did not go, so the follower
    the bridge owns stays; nor did it come, so a person who unfollowed is not followed again.
    `_plan_followers` (plan.py, `added`/`removed`) diffs e-mails and maps each side to logins
    separately, so the one login is both "removed" and "added"."""
    b = base(followers=(frozenset({"bob@old.example"}), frozenset({"bob"})))
    following = snap(followers=(frozenset({"bob@example.com"}), frozenset({"bob"})))
    actions = plan_link(b, following, frozenset({"bob"}), USERS, policy())
    assert not [a for a in actions if isinstance(a, RemoveFollowers)]
    unfollowed = snap(followers=(frozenset({"bob@example.com"}), frozenset()))
    actions = plan_link(b, unfollowed, frozenset(), USERS, policy())
    assert not [a for a in actions if isinstance(a, AddFollowers)]


def test_a_primary_email_change_does_not_revert_an_unfollow(tmp_path: Path) -> None:
    """The other half: bob bookmarks, the bridge follows for him, bob unfollows by hand (the
    bridge forgets him).  bob changes his Sentry primary e-mail: the same bookmark, seen under
    the new address, looks new, and the bridge follows the ticket for him again."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle(full=True).ok
    w.tracker.remove_follower(key, "bob", by="bob")
    assert w.cycle(full=True).ok
    change_primary_email(w, BOB, "robert@example.com")
    assert writes_of_cycles(w, True, False, True) == []
    assert "bob" not in followers(w, key)


# == 5. Bookmarks Sentry's search cannot show (SSO-only people) are taken for "none" ============


def test_a_person_switched_to_sso_only_keeps_the_follower_of_their_bookmark(tmp_path: Path) -> None:
    """README (d6cbf0c): "Bookmarks the bridge cannot see are unknown, never 'nobody'".  A
    `bookmarks:<email>` search finds nothing for a person who signs in only through SSO (the
    Sentry client says so, and the member list tells: `hasPasswordAuth = false`; `doctor` names
    them).  bob bookmarks, the bridge follows the ticket for him; the organisation then moves
    bob to SSO-only sign-in.  His bookmark is still there, but the search shows none, the
    planner takes it as dropped and unfollows him (the next cycles never follow him again).
    `bookmarks_seen` carries the baseline bookmarks of people mapped to nobody, not of people
    whose bookmarks cannot be searched."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle(full=True).ok
    assert followers(w, key) == {"bob"}
    user = w.sentry._user_by_email(BOB)
    assert user is not None
    user.sso_only = True
    assert writes_of_cycles(w, True, False, True) == []
    assert followers(w, key) == {"bob"}
