"""guestkey's performance benchmarks: `python -m bench` (`make bench`)."""
