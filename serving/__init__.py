"""hybridrec.serving"""
