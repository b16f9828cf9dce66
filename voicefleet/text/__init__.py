"""Text frontend shared by the control plane and the agents."""
