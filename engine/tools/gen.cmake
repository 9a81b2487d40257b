# openelm_gen_checkpoint
