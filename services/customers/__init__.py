"""The customers service: who our customers are, and everything that happened with each (contract §8)."""
