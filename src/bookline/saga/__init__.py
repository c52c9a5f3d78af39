"""The booking saga: its forward steps, their compensations, the orchestrator and recovery."""
