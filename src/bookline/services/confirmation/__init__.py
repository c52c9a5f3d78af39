"""confirmation-service: bookings (confirmed, cancelled), confirmation codes and the outbox."""
