"""URL slugs."""

import unicodedata


def slugify(text: str) -> str:
    """A lower-case ASCII slug: words joined by single dashes, no leading or trailing dash."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = ascii_text.lower().strip().split(" ")
    return "-".join(words)
