# MTE_SANITIZE: build everything with the compiler's sanitizers, e.g. "address,undefined" or
# "thread" (tools/sanitize.sh and `make test` use both). Empty: an ordinary build.
set(MTE_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread | empty")
if(MTE_SANITIZE)
  # Stop at the first finding of UBSan too, so that no report can scroll past unnoticed.
  add_compile_options(-fsanitize=${MTE_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${MTE_SANITIZE})
endif()
