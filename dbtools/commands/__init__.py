"""The commands: orchestrations above verify, report and safety, as alembic's ``command.py``
sits above its engine. ``doctor`` asks the server whether each command can work; ``rollout``
runs the guide's five phases (doctor, migrations, snapshots, verify) with the application's own
commands; ``demo`` walks the whole pipeline in a throwaway sandbox."""
