"""notification-service: consumes booking events from the queue and sends one e-mail per
(booking, kind), keeping the sent-notification log that guarantees it."""
