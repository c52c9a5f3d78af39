"""booking-service: the public API; runs the booking saga, its compensations and their recovery."""
