"""The command lines of ``launchers/``: configuration checked before the Dragon runtime starts, the
campaign run inside it. Nothing here imports Dragon until a valid campaign is about to run.
"""
