"""Chat filtering: configurable word lists matched with an Aho-Corasick automaton."""
