"""pricing-engine: rate plans, the pricing of stays night by night, and quotes with an expiry."""
