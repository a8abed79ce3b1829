"""What a config may hold: the groups' dataclasses, the conf tree on disk, renamed keys.
Pure data, below every package whose options it describes.
"""
