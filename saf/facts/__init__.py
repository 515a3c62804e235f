"""Custom pyinfra facts: what pyinfra's own facts do not read (macOS tools, sudo, free disk...)."""
