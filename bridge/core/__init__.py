"""The pure core: values in, values out.  No clock, no network, no database.

* `mapping`   raw API JSON -> the values the planner compares (and back), who is who;
* `plan`      design §3: baseline pair + both sides now -> the actions one link needs;
* `outcomes`  design §9: an action + what was observed of it -> where the baseline goes;
* `workflow`  a way through a Tracker queue's workflow from the transitions seen;
* `guard`     the mass-change guard as a running bound;
* `new_issue` what a Tracker issue created for a Sentry issue looks like;
* `values`, `actions`, `linkrun`, `report`: the records all of these pass around.

The shell (`bridge.engine`, the clients, the store) executes and observes; every decision about
what to write and what to believe afterwards is made here, where a test can reach it directly.
"""
