"""Writing to disk without losing data: atomic files and folders, one writer per folder, content
manifests checked before reading, and what a folder holds (for errors that name the right one)."""
