"""The user's files: output paths that never cost a file we did not write
(``outputs``) and reading back what a folder says about itself as untrusted input
(``untrusted``).
"""
