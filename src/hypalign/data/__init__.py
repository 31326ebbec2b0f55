"""Data readers: embedding files, the Gene Ontology and Swiss-Prot from Debian's metastudent-data, WordNet."""
