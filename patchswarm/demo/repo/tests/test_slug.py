import unittest

from textkit import slugify


class SlugifyTest(unittest.TestCase):
    def test_basic(self):
        self.assertEqual(slugify("Hello World"), "hello-world")

    def test_accents(self):
        self.assertEqual(slugify("Café au lait"), "cafe-au-lait")

    def test_digits(self):
        self.assertEqual(slugify("Python 3 rocks"), "python-3-rocks")


if __name__ == "__main__":
    unittest.main()
