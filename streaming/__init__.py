"""hybridrec.streaming"""
