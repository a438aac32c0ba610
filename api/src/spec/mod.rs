mod node;
