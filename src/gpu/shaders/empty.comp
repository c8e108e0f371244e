#version 450
// One workgroup that does nothing: the dispatch round trip of the bench.
layout(local_size_x = 1) in;
void main() {}
