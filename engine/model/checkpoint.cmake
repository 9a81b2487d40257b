# openelm_model_io
