# The audit Merkle tree, signed checkpoints and the offline export verifier. Included by
# storage/CMakeLists.txt after phivault_storage is defined.
target_sources(phivault_storage PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/merkle.cc
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cc
  ${CMAKE_CURRENT_LIST_DIR}/audit_verify.cc
)
