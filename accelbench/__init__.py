"""accelbench: how much does this GPU accelerate my deep-learning work, and did my change make it slower?"""

__version__ = "0.1.0"
