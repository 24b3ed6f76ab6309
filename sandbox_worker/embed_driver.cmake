# Writes repl_driver.py into a C++ source as kReplDriverSource, so the binary
# carries its driver and works from any build directory or install prefix.
#   cmake -DINPUT=repl_driver.py -DOUTPUT=repl_driver_source.cc -P embed_driver.cmake
file(READ ${INPUT} source)
string(FIND "${source}" ")nbrl_driver\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )nbrl_driver\"")
endif()
file(WRITE ${OUTPUT}.tmp
  "// Generated from sandbox_worker/repl_driver.py by embed_driver.cmake.\n"
  "#include \"sandbox_worker/launcher.h\"\n"
  "namespace nbrl::sandbox {\n"
  "const char kReplDriverSource[] = R\"nbrl_driver(${source})nbrl_driver\";\n"
  "}  // namespace nbrl::sandbox\n")
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
