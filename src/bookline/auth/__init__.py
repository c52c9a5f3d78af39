"""Who may call Bookline: customers with a bearer JWT, services with a short-lived JWT of their own,
and the keys behind both (``bookline up`` provisions them in ``DATA_DIR/keys``)."""
