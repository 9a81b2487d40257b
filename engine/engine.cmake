# openelm_engine: the loop thread (llm_engine.cc)
