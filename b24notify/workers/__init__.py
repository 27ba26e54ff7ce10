"""The worker side: RQ jobs that sync tasks and deliver notifications, and the dispatcher."""
