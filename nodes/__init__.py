"""therasim.nodes"""
