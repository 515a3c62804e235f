"""Custom pyinfra operations: where pyinfra's are wrong (launchd) or missing."""
