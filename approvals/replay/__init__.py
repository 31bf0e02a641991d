"""The policy simulator: a proposed change replayed over the recorded proposals.

`changes` turns what an admin or a lead typed into a Change (validated as the
model would validate it, never saved); `history` reads the recorded facts it
needs; `engine` runs them through the gateway's own pure policy and trust
rule; `report` compares the outcome with what happened and records who
simulated what, the only thing the simulator ever writes.
"""
