"""therasim.policies"""
