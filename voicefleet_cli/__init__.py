"""The ``voicefleet`` command: starts the applications (an agent, the control plane, the whole
system on one box with ``up``) and talks to the control plane's API (say, jobs, devices).

It stands above the applications it starts; the shared base (``voicefleet/``) imports none of
them. Each subcommand imports its application only when it runs, so ``voicefleet agent`` and the
API commands work from an edge install (no web framework, no database, no PyTorch).
"""
