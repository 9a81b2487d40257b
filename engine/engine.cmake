# openelm_engine: the loop thread (llm_engine.cc). Depends only on the
# DecoderModel interface; the server links a concrete model (openelm_model).
find_package(OpenMP REQUIRED)  # StepSampler draws on the idle OpenMP team
add_library(openelm_engine ${CMAKE_CURRENT_SOURCE_DIR}/llm_engine.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/step_sampler.cc)
openelm_target_options(openelm_engine)
target_link_libraries(openelm_engine PUBLIC openelm_base openelm_request openelm_scheduler openelm_output openelm_tenancy_scheduler openelm_kv_cache
  openelm_sampling openelm_tokenizer absl::synchronization absl::flat_hash_set absl::time
  absl::status absl::statusor Threads::Threads OpenMP::OpenMP_CXX)
