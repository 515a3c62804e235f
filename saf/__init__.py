"""Studio Air Fabric: what pyinfra does not give us.

The cluster spec (``saf.spec``), custom facts and operations, the verification job
and the local lab live here; ``deploy.py`` and ``tasks/`` compose them with pyinfra's own.
"""
