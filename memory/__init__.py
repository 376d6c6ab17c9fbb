"""therasim.memory"""
