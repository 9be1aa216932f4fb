// The target that owns the precompiled GoogleTest headers every test target
// reuses (tests/CMakeLists.txt mk_test_pch): an executable like the tests,
// so that it is compiled with their flags; never run.
int main() { return 0; }
