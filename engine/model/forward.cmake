# openelm_model
