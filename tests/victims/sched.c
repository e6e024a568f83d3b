#include "victim.h"
int main(void){victim_skip("todo");}
