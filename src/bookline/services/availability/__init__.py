"""availability-service: properties, rooms and room-night claims (holds and booked nights)."""
