"""What every layer uses: the errors a user can cause, the bounds on settings, memory and progress,
safe file writes and reads, and the rule for names that become folders. Imports nothing else of
losslab."""
