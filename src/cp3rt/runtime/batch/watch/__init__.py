"""``cp3rt watch``'s library side: segment images as they are written into a folder tree.

``loop.watch_folder`` (the loop, nets opened once), ``detect`` (which files are inputs; file
events or polling), ``complete`` (when a file being written is whole), ``journal`` (what each
file's fate was, so a restart resumes).
"""

from cp3rt.runtime.batch.watch.loop import WatchEvent, WatchOptions, WatchSummary, check_folders, watch_folder

__all__ = ["check_folders", "WatchEvent", "WatchOptions", "WatchSummary", "watch_folder"]
