"""The pure model of Bookline: stays, nights, money, holds, bookings and the errors they raise.

Nothing in this package does I/O.
"""
