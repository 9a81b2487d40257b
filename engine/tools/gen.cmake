# openelm_gen_checkpoint: random-weight checkpoints in the HF layout.
add_executable(openelm_gen_checkpoint openelm_gen_checkpoint.cc)
openelm_target_options(openelm_gen_checkpoint)
target_link_libraries(openelm_gen_checkpoint PRIVATE openelm_model_io absl::flags absl::flags_parse
                      absl::flags_usage)

# openelm_cpu_info: the CPU's ISA levels and the default execution plan
# (scripts/test.sh reads --field=detected to pick the capped test runs).
add_executable(openelm_cpu_info openelm_cpu_info.cc)
openelm_target_options(openelm_cpu_info)
target_link_libraries(openelm_cpu_info PRIVATE openelm_model absl::flags absl::flags_parse
                      absl::flags_usage)
set_target_properties(openelm_cpu_info PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)

# Both ship in the install tree (and the container image). In sanitizer builds
# engine/tools is added EXCLUDE_FROM_ALL, which leaves its install rules out of
# `cmake --install` as well.
install(TARGETS openelm_gen_checkpoint openelm_cpu_info RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
