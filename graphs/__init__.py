"""therasim.graphs"""
