"""hybridrec.features"""
