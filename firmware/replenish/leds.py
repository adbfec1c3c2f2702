"""LED patterns: what each outcome looks like on a single LED or an RGB LED.

pattern -> (colour, on_ms, off_ms, repeats). A single LED ignores the colour. The
hardware layer plays them; the unix layer prints the pattern name. Total time lit
is kept short: the LED is a large share of a press's energy.
"""

OFF = (0, 0, 0)
GREEN = (0, 1, 0)
AMBER = (1, 1, 0)
RED = (1, 0, 0)
BLUE = (0, 0, 1)
WHITE = (1, 1, 1)

PATTERNS = {
    "sending": (WHITE, 0, 0, 0),  # steady on until the answer pattern replaces it
    "ordered": (GREEN, 600, 200, 1),
    # An order that waits for the household's consent (a higher price or an unavailable
    # product): three slow amber pulses, unlike ordered (green) and error (fast red).
    "awaiting_consent": (AMBER, 400, 400, 3),
    "already_ordered": (AMBER, 150, 150, 2),
    "not_configured": (AMBER, 150, 150, 3),
    "limit_reached": (RED, 300, 300, 3),  # a household limit stopped the order
    "not_claimed": (RED, 80, 80, 6),
    "error": (RED, 40, 160, 10),  # no answer: the event is queued
    "recorded": (GREEN, 30, 0, 1),
    "low_battery": (RED, 1000, 200, 1),  # after the answer's pattern
    "setup": (BLUE, 500, 500, 0),  # blinking while the access point is up
}


def pattern(name):
    return PATTERNS.get(name, PATTERNS["error"])
