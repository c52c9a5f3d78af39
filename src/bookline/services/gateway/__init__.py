"""payment-gateway: a stand-in for an external card processor (Stripe-like).

The only place in Bookline that ever sees a card number: it turns a card into a token at once and
keeps only the last four digits, the brand and the test behaviour. Authorizations, captures, voids and
refunds are keyed by idempotency keys, and test cards (plus configurable fault rates) decide outcomes.
"""
