"""Global scheduler replicas: place the tasks raylets spill over."""
