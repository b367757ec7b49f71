"""hybridrec.batch"""
