"""The search proper: its config, its study and storage, its processes and the driver that
runs the trials until the schedule or the budget is done."""
